"""Content controls (issue 16): prompt rules, the image safety check, and per-chat policies.

    rules.py       blocked terms and patterns, matched on a folded form of the prompt (pure)
    classifier.py  the image classifier: its files, loading (torch imported lazily), scoring
    policy.py      what a verdict means in a chat: allow, spoiler or block (pure)
    controls.py    the runtime the service holds: checks prompts, judges images in a thread,
                   keeps the per-chat policies and the counts /status shows

Nothing here imports torch at import time.
"""
