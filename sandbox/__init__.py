"""A local emulator of the Feishu endpoints Feishu Bridge uses, on their documented wire format.

One module per Feishu product under `sandbox.products`; `sandbox.sender` delivers events to a
webhook the way Feishu does. Wire-format assumptions are listed in docs/sandbox.md.
"""
