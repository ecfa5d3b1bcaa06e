"""LightningDataModules and the label-subset selection shared by every modality."""
