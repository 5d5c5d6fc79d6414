"""On-call: rotations, escalation policies, and pages that escalate until someone answers."""
