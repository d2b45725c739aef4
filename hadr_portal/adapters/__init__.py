"""The only code that touches infrastructure. No Django imports: plain dataclasses in and out."""
