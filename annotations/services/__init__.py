"""Every write of the labelling domain. One module per subject; each function is one transaction."""
