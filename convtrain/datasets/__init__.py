"""Small data sets shipped inside the package (see DIGITS-ATTRIBUTION.txt)."""
