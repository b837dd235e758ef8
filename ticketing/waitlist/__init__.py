"""The waiting list after sold out: fans queue by account; tickets that come back are offered in order."""
