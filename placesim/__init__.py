"""placesim: a faithful, deterministic Places API (New) emulator, served over real HTTP.

`python -m placesim --port 8765 --seed 1` serves:
- the API: POST /v1/places:searchText, POST /v1/places:searchNearby, GET /v1/places/{id};
- control and ground truth: /sim/health, /sim/config, /sim/reset, /sim/billing (/sim/stats),
  /sim/world;
- hosted business websites: /sites/{slug}/..., and /robots.txt.

See docs/places.md, The emulator. Modules: world (the businesses) and catalog (their kinds),
search (API semantics) with validation and fields (masks, Place JSON), tokens (page tokens),
meter (quotas, billing), rpc (Google's error bodies), sites (websites), server (the HTTP
application), httpserver (HTTP/1.1 on asyncio), config, process (run it as a child process).
"""
