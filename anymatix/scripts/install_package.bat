@echo off
rem Installs more Python packages into this portable anymatix environment.
rem   install_package.bat PACKAGE [PACKAGE ...]     (any `pip install` arguments work)
rem It runs the python that sits beside this script, so it works from any current directory and
rem wherever the folder was unpacked. `-s` keeps the user's own site-packages out.
"%~dp0python\python.exe" -s -m pip install %*
exit /b %ERRORLEVEL%
