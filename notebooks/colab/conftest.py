# The Colab launcher runs on Colab only (a GPU, the network, Google Drive): `make test-notebooks`
# (pytest --nbval-lax notebooks) must not collect it. Its code cells are also tagged nbval-skip.
collect_ignore_glob = ["*.ipynb"]
