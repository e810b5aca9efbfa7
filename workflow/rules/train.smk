# train_model: written by the segmentation work (issue 3)
