"""Anchor apps for bench/framework_bench.py: a few lines each, served by gunicorn beside mita so
that its routes can be read against what plain Flask, and Flask with a tutorial's token check,
cost on the same machine in the same run. gunicorn.conf.py here gives them mita's settings."""
