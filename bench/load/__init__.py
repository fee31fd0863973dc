"""The load benchmark of the chat server (run it with `python -m bench.run_load`, see docs/performance.md).

Modules, in the order a run uses them:

- `targets`      starts the servers under test as processes: `chatbot serve` and the bare echo server
- `echo_server`  the baseline: a bare Tornado WebSocket server that answers each JSON frame with itself
- `fleet`        starts load generator processes and steers them through a measurement window
- `generator`    one load generator process: the scenarios (closed loop, open loop, idle, ...)
- `connection`   one client connection speaking the chat protocol
- `procstat`     CPU time and RSS of a process tree, from /proc
- `suite`        the measurements of a run, each repeated, and their figures
- `report`       prints the figures and the targets
- `profile`      samples the server with py-spy and sums the samples by cost
"""
