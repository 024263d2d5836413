@echo off
rem Adds, removes, lists, checks and undoes the Python packages of this portable anymatix
rem environment; `packages.bat --help` says how. It runs the python that sits beside this script,
rem so it works from any current directory and wherever the folder was unpacked or moved.
"%~dp0python\python.exe" -s "%~dp0tools\packages.py" %*
exit /b %ERRORLEVEL%
