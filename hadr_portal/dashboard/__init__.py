"""The home page: the sections the apps registered, composed and cached for every reader."""
