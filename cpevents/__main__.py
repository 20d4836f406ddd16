from cpevents.cli import app

app(prog_name="cpevents")
