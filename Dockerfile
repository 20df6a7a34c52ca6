# exchsim in a container. docker-compose.yml runs one container per server (and one per
# transport service of EX01) from this image; alone it runs the whole lab of configs/lab.yaml
# on its loopback addresses inside the container (docker run --rm exchsim:latest).
FROM python:3.11-slim
WORKDIR /opt/exchsim
COPY pyproject.toml README.md ./
COPY exchsim ./exchsim
COPY configs ./configs
RUN pip install --no-cache-dir .
VOLUME /var/lib/exchsim
EXPOSE 25 80 465 475 587 717 2525
# `exchsim health` reads the command line of the container's main process (PID 1: exchsim lab,
# serve or sink), works out the listeners that command opens, and connects to each: an SMTP
# listener must send its 220 banner (and answers QUIT), the CRL server an HTTP reply. Exit 0
# when all answer, 1 otherwise (README "The lab in docker-compose").
HEALTHCHECK --interval=30s --timeout=20s --start-period=60s --retries=3 CMD ["exchsim", "health"]
ENTRYPOINT ["exchsim"]
CMD ["lab", "--config", "/opt/exchsim/configs/lab.yaml", "--data", "/var/lib/exchsim"]
