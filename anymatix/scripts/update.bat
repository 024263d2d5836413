@echo off
rem Updates this portable anymatix to a new release, downloading only what changed, and goes
rem back (`update.bat --help` says how). It runs from a copy of itself, .update\updating.bat:
rem the switch between releases may replace the scripts at the top of the folder, and cmd reads
rem the batch file it runs as it goes. The switch itself runs with a copy of python made for it
rem in .update\runner, after update.py has ended: Windows does not rename a folder while a
rem program from it runs. A switch that was stopped is taken back first.
setlocal
if /i "%~nx0"=="updating.bat" goto update
if not exist "%~dp0.update" mkdir "%~dp0.update"
copy /y "%~f0" "%~dp0.update\updating.bat" >nul
if errorlevel 1 exit /b 2
"%~dp0.update\updating.bat" %*

:update
set "here=%~dp0.."
if exist "%here%\.update\switch.journal" (
    "%here%\.update\runner\python.exe" -I -S "%here%\.update\switch.py" recover "%here%"
    if errorlevel 1 exit /b 2
)
"%here%\python\python.exe" -s "%here%\tools\update.py" %*
if errorlevel 100 if not errorlevel 101 goto switch
exit /b %errorlevel%

:switch
"%here%\.update\runner\python.exe" -I -S "%here%\.update\switch.py" finish "%here%"
exit /b %errorlevel%
