from chatbot.cli import main

main()
