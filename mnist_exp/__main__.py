from mnist_exp.app import main

main()
