"""The Argo CD port: sync a tenant's Application and wait until it is Synced and Healthy."""
