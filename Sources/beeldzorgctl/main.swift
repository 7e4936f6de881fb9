print("beeldzorgctl")
