"""`flowdeblur serve`: a local web page to deblur a clip and compare before and after.

Modules: ``options`` (the page's choices read through ``deblur``'s option parser),
``sessions`` (one temporary folder per tab), ``jobs`` (the queue and the worker thread that
runs :func:`flowdeblur.inference.deblur_video`), ``results`` (stills, side-by-side video and
scores of a finished job), ``server`` (the Starlette routes), ``launch`` (socket, model,
uvicorn); ``static/`` holds the page. Importing this package imports none of them: the web
libraries are an extra (``pip install "flowdeblur[ui]"``).
"""
