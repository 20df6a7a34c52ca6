# exchsim in one container: the lab of configs/lab.yaml on the container's own address.
FROM python:3.11-slim
WORKDIR /opt/exchsim
COPY pyproject.toml README.md ./
COPY exchsim ./exchsim
COPY configs ./configs
RUN pip install --no-cache-dir .
VOLUME /var/lib/exchsim
EXPOSE 25 465 475 587 717 2525
ENTRYPOINT ["exchsim"]
CMD ["lab", "--config", "/opt/exchsim/configs/compose.yaml", "--data", "/var/lib/exchsim"]
