"""From one mail to facts about it, with no I/O: parse, charsets, thread, loops, language, mood,
rules, classify, identity, commands and quotes."""
