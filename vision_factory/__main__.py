from vision_factory.cli import main

main()
