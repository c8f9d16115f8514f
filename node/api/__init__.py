"""Local API routers (referrals, directory, health)."""
