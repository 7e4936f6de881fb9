print("beeldzorgd")
