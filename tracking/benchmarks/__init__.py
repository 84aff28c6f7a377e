"""`make bench`: synthetic data, the COPY ceiling, and HTTP ingestion against a real server.

- ``vocabulary``: the event types, properties and people keys both the generator and the
  HTTP clients use (stdlib only);
- ``synthetic``: a million people and ten million events through COPY (the fast path);
- ``client``: load-generating client processes (stdlib only: raw sockets, no Django);
- ``http``: starts the web server, runs the clients, samples worker memory, checks the
  database afterwards;
- ``report``: the JSON and Markdown results under ``bench/results/``.
"""
