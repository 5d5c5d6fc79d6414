"""The cluster port: server-side apply a tenant's objects, read them back, find drift, isolate."""
