"""Brokers the relay publishes to, behind one port (``port.Publisher``)."""
