"""The ITSM port: incident, change and problem records linked back to a tenant."""
