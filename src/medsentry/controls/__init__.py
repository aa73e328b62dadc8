"""Security controls audit: findings over events and the inventory, framework mappings, zone
segmentation. (No imports here: `controls.tables` is imported by the store schema.)"""
