"""Identity driver: a tenant's group, its members' grants, and whether access is on."""
