"""The package list: everything else is in pyproject.toml.

pyproject.toml's ``packages.find`` cannot add ``mnist_exp.conf``, which is the top-level ``conf/``
mapped in by ``[tool.setuptools.package-dir]``; here the found packages and it are listed together.
"""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["mnist_exp", "mnist_exp.*"]) + ["mnist_exp.conf"])
