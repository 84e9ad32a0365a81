"""RQ jobs: thin adapters — plain arguments in, one call into `bot/<capability>`, result out.

Dependencies come from `bot.services.current()` (installed by the worker). Every job is listed by
its dotted name in `bot.queue.Jobs`, which is how `bot/` enqueues it without importing this
package (docs/architecture.md).
"""
