"""compose.yaml run for real on podman: brought up, exercised through its proxy, brought down."""
