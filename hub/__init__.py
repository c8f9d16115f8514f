"""rssn-hub: the network's router. It stores and forwards envelopes it cannot read."""

__version__ = "0.1.0"
