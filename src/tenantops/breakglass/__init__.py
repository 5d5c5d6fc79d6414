"""Emergency break glass: time-boxed elevated access, audited, revoked on time, reviewed."""
