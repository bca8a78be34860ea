import PartitionDB

print("pdb")
