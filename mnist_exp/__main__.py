from mnist_exp.app import cli

cli()
