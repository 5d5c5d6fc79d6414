"""Events: the transactional outbox, the CloudEvents envelope and the publishers."""
