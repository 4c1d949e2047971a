ignored via parent .gitignore
