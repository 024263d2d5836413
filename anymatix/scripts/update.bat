@echo off
rem Updates this portable anymatix to a new release, downloading only what changed, and goes
rem back (`update.bat --help` says how). Everything is on one line: cmd reads a batch file line by
rem line, and the switch at the end replaces this file. The switch runs from .update\ with a copy
rem of python made for it, after update.py has ended: Windows does not rename a folder while a
rem program from it runs. A switch that was stopped is taken back first.
(if exist "%~dp0.update\switch.journal" "%~dp0.update\runner\python.exe" -I -S "%~dp0.update\switch.py" recover "%~dp0.") & "%~dp0python\python.exe" -s "%~dp0tools\update.py" %* & (if errorlevel 100 if not errorlevel 101 "%~dp0.update\runner\python.exe" -I -S "%~dp0.update\switch.py" finish "%~dp0.") & exit /b
