"""DICE datasets: loading and validation, conversion to YOLO, release ZIP extraction. No torch here."""
