"""The training child process and what it shares with the worker.

`job`, `folders`, `tokenizers` and `estimates` import neither Django nor JAX (the web process and the
worker read them); `data` needs numpy; `modeling` and `child` import JAX and
Tunix and run only inside the per-run child process.
"""
