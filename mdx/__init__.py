"""The MD-mix notes' proposals (shared/seeds/mdmix_conversation.txt in the project; see README), one idea per file."""
