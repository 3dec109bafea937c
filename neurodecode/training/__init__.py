"""Lightning systems, data modules and evaluation protocols."""
