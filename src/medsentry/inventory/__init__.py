"""Device inventory: evidence (events) folded into devices with identified attributes."""
