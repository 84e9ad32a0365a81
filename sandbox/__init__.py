"""A local emulator of the Feishu endpoints Feishu Bridge uses, on their documented wire format.

One module per Feishu product under `sandbox.products`; `sandbox.sender` delivers events the way
Feishu does — to a webhook, or over the long connection (`sandbox.ws_server`) in websocket mode.
Wire-format assumptions are listed in docs/sandbox.md.
"""
