# ssl-ser for GPU machines: CUDA-enabled PyTorch base image, the package, `ser` as entry point.
#   docker build -t ssl-ser .
#   docker run --gpus all -v $PWD/data:/data -v $HOME/.cache/huggingface:/root/.cache/huggingface \
#       ssl-ser extract /data/manifest.csv --model facebook/wav2vec2-base --cache-dir /data/cache
# The base image's torch (with CUDA) satisfies the package's torch requirement, so pip keeps it;
# constraints.txt (the CPU pin for development machines) is deliberately not used here.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/ssl-ser
COPY pyproject.toml setup.cfg README.md ./
COPY src ./src
RUN pip install . && ser --version

WORKDIR /data
ENTRYPOINT ["ser"]
CMD ["--help"]
