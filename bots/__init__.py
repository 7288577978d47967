"""Chat adapters (Telegram, Discord, CLI) and what they share: parsing, translations, rendering."""
