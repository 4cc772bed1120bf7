"""Flower's configuration file for ``jobq flower``: deliberately empty.

Flower executes ``flowerconfig.py`` from its working directory unless told otherwise, and the
options set there override the ``FLOWER_*`` environment (``basic_auth = []`` would turn
authentication off). ``jobq flower`` passes ``--conf`` pointing here, so whatever directory it
starts in, Flower is configured only by jobq's command line and the environment.
"""
