# The project image that every Kubeflow step runs (`python -m alloy_mtl.deploy.step` -> `kedro run --nodes ...`).
#
#   docker build -t registry.example.com/alloy-mtl:0.1.0 .
#   docker push registry.example.com/alloy-mtl:0.1.0      # then set `image:` in conf/<env>/kubeflow.yml
#
# PyTorch's Linux x86_64 wheels on PyPI bundle the CUDA runtime (the nvidia-* packages), so this slim Python
# base trains on the GPU of any node whose driver the NVIDIA device plugin exposes; `torch.cuda.is_available()`
# is True there and False on CPU nodes. To start from a CUDA image instead, pass one with Python 3.11:
#   docker build --build-arg BASE_IMAGE=pytorch/pytorch:<tag with python 3.11> .
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KEDRO_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1 \
    GX_ANALYTICS_ENABLED=false \
    MPLBACKEND=Agg

# libgomp: OpenMP for torch/scikit-learn on slim bases
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# Non-root user; group 0 so that platforms running an arbitrary UID (OpenShift) can still write.
RUN useradd --create-home --uid 1000 --gid 0 --shell /usr/sbin/nologin alloy
WORKDIR /home/alloy/app

# Dependencies and package first (changes to conf/ do not reinstall torch)
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip install . \
    && python -c "import torch, alloy_mtl; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# Kedro project files: pyproject.toml ([tool.kedro]) and conf/ in the working directory, data/ mounted by the
# pipeline's shared volume (kubeflow.yml storage.mount_path)
COPY conf ./conf
RUN mkdir -p data conf/local \
    && chown -R 1000:0 /home/alloy \
    && chmod -R g=u /home/alloy

USER 1000
CMD ["kedro", "run", "--env", "base", "--pipeline", "train_all"]
