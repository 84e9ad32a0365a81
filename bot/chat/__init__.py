"""Chat commands and cards: parse a message (`parser`), check who may run it and audit it
(`access`), do it (`commands`, `actions`), answer with texts (`texts`) and cards that follow
their job until it ends (`cards`, `live`), handle card buttons (`buttons`), and deliver
operator alerts to the admin chat (`alerts`)."""
