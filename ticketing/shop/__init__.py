"""The shop's and the organizer dashboard's server-rendered pages."""
